from vr_trainer.cli import main

raise SystemExit(main())
