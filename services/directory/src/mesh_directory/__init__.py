"""The Mesh LLM directory: a small public service listing meshes that chose to be found."""
