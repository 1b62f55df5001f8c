"""YAML recipes: a whole adaptation run, tokenizer to report, from one file.

``vocadapt run RECIPE`` validates the recipe whole (:func:`validate_recipe`), plans its stages
with keys over their inputs (:mod:`vocadapt.recipe.plan`), runs what is not done
(:func:`run_recipe`) and writes a leaderboard and a report. ``vocadapt demo`` runs the packaged
``_data/demo.yaml``; ``vocadapt demo --quick`` the small ``_data/demo-quick.yaml``.
"""

from vocadapt.recipe.run import describe_plan, plan_recipe, run_recipe
from vocadapt.recipe.schema import Recipe, demo_recipe_path, load_recipe, recipe_from_dict, validate_recipe

__all__ = [
    "Recipe", "demo_recipe_path", "describe_plan", "load_recipe", "plan_recipe", "recipe_from_dict", "run_recipe",
    "validate_recipe",
]
