"""``python -m heatmap_server`` is ``heatmap-server``."""

from .app import main

if __name__ == "__main__":
    main()
