"""The single-agent TD3 baseline: stable-baselines3 learns it (``training.train_td3``); this folder loads its actor."""
