"""The main job as cached stages: a stage runs only when the hash of its inputs changed; writes are atomic."""
