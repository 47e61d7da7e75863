from compatsolve.cli import main

raise SystemExit(main())
