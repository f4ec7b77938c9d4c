"""dna_zoo.hub: publish DNA models with their artifacts to the Hugging Face Hub, and load them.

``convert`` (original checkpoint -> safetensors + config), ``push`` (weights, timm config,
model card, artifacts), ``pull`` (model or artifact into the HF cache; TensorRT engines only
when they match this machine). Everything goes through huggingface_hub's own client.
"""
