"""The HTTP read service (`tagflow serve`): the FastAPI app, its routes and the API keys."""
