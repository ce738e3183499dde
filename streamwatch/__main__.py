from streamwatch.cli.main import main

raise SystemExit(main())
