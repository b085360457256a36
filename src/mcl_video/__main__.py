"""``python -m mcl_video`` (also what ``torchrun -m mcl_video`` runs)."""

from mcl_video.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
