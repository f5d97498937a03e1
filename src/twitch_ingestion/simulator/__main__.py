from twitch_ingestion.simulator.cli import main

raise SystemExit(main())
