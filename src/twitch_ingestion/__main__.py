from twitch_ingestion.cli import main

raise SystemExit(main())
