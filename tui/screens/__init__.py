"""The app's screens: one module per screen, each with its own .tcss beside it."""
