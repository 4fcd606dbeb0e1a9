"""Training WAN: WanTrainingSetup (shared objective, timesteps, expert routing) and the LoRA, full and
embedding setups; experts.py, conditioning.py, data_loader.py (WanBaseDataLoader), model_loader.py
(WanTrainingModelLoader: the model plus embeddings).
"""
