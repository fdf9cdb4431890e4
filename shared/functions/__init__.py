"""The Function App's Blueprints, one per capability; function_app.py registers them."""
