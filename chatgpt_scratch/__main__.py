from chatgpt_scratch.cli import main

raise SystemExit(main())
