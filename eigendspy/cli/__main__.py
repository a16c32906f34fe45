"""``python -m eigendspy.cli`` (what ``accelerate launch -m eigendspy.cli`` runs)."""

from eigendspy.cli.app import main

if __name__ == "__main__":
    main()
