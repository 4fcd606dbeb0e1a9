"""The plugin contract: what the trainer needs from a model family, and nothing else.

BaseModel, BaseModelLoader (+ ModelLoadError), BaseModelSetup (+ TrainProgress, ValidationRoute), BaseModelSaver,
BaseModelSampler (+ SampleOutput) and BaseDataLoader. The trainer imports only these, config, module, util and
the registry (tests/test_import_rules.py).
"""
