"""The editing studio: a local web page over a finished run (python -m pti_lab.studio RUN_DIR), its
model logic (session.py) and the command line that replays a saved edit (replay.py)."""
