"""``python -m eigendspy.cli`` (what ``accelerate launch -m eigendspy.cli`` runs)."""

from eigendspy.cli.app import app

if __name__ == "__main__":
    app()
