"""IVR-R1 reconstruction as a verl 0.9.1 recipe: reward screening, step-level erosion localization
and a re-reasoning loop that rectifies flawed rollouts inside a custom agent loop.

Only the paper's abstract is public; every open choice is a switch in `config/ivr_r1_trainer.yaml`
(`ivr_r1:` section) and is documented in recipe/ivr_r1/README.md.
"""
