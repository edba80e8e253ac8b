from dermsynth.cli import main

raise SystemExit(main())
