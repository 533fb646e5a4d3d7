"""``python -m appliance`` is the same as the ``sensor-bridge`` command."""

from .cli import main

raise SystemExit(main())
