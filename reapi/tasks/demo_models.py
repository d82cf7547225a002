"""The three task models `reapi demo` serves from the offline demo upstream (prices from reAPI's
public catalog: gpt-image-2 0.03/0.05/0.08 USD per image, Seedance 2.0 per second by resolution
and audio, Mureka V9 0.06 USD per song; 1,000 credits = 1 USD)."""
from __future__ import annotations

RATIOS = ["1:1", "16:9", "9:16", "4:3", "3:4", "3:2", "2:3", "21:9", "9:21", "5:4", "4:5", "2:1", "1:2", "auto"]

GPT_IMAGE_2 = {
    "category": "image", "unit": "image", "quantity": ["n"], "max_seconds": 300,
    "description": "OpenAI gpt-image-2, per image by resolution",
    "skus": [{"when": {"resolution": "1k"}, "credits_per_unit": "30"},
             {"when": {"resolution": "2k"}, "credits_per_unit": "50"},
             {"when": {"resolution": "4k"}, "credits_per_unit": "80"}],
    "params": {"type": "object", "required": ["prompt"], "properties": {
        "prompt": {"type": "string", "minLength": 1, "maxLength": 32000},
        "size": {"type": "string", "enum": RATIOS, "default": "1:1"},
        "resolution": {"type": "string", "enum": ["1k", "2k", "4k"], "default": "1k"},
        "n": {"type": "integer", "minimum": 1, "maximum": 1, "default": 1},
        "image_urls": {"type": "array", "maxItems": 16, "items": {"type": "string", "format": "uri"}}}},
}

SEEDANCE_2 = {
    "category": "video", "unit": "second", "quantity": ["duration"], "max_seconds": 1800,
    "description": "ByteDance Seedance 2.0, per second by resolution, audio on or off",
    "skus": [{"when": {"resolution": r, "generate_audio": a}, "credits_per_unit": c}
             for r, off, on in (("480p", "48", "60"), ("720p", "100", "120"), ("1080p", "240", "290"),
                                ("4k", "680", "820"))
             for a, c in ((False, off), (True, on))],
    "params": {"type": "object", "required": ["prompt"], "properties": {
        "prompt": {"type": "string", "minLength": 3, "maxLength": 4000},
        "duration": {"type": "integer", "minimum": 4, "maximum": 15, "default": 5},
        "size": {"type": "string", "enum": ["16:9", "9:16", "1:1", "4:3", "3:4", "21:9", "adaptive"],
                 "default": "16:9"},
        "resolution": {"type": "string", "enum": ["480p", "720p", "1080p", "4k"], "default": "720p"},
        "generate_audio": {"type": "boolean", "default": True},
        "return_last_frame": {"type": "boolean", "default": False},
        "seed": {"type": "integer", "minimum": -1, "maximum": 4294967295},
        "image_urls": {"type": "array", "maxItems": 9, "items": {"type": "string", "format": "uri"}},
        "video_urls": {"type": "array", "maxItems": 3, "items": {"type": "string", "format": "uri"}},
        "audio_urls": {"type": "array", "maxItems": 3, "items": {"type": "string", "format": "uri"}}}},
}

MUREKA_V9 = {
    "category": "audio", "unit": "song", "quantity": ["number_of_songs"], "max_seconds": 600,
    "description": "Mureka V9 song, per song",
    "skus": [{"when": {}, "credits_per_unit": "60"}],
    "params": {"type": "object", "required": ["lyrics"], "properties": {
        "lyrics": {"type": "string", "minLength": 1, "maxLength": 3000},
        "prompt": {"type": "string", "maxLength": 1024},
        "number_of_songs": {"type": "integer", "minimum": 1, "maximum": 3, "default": 1},
        "output_format": {"type": "string", "enum": ["mp3", "wav", "flac"], "default": "mp3"}}},
}

DEMO_TASK_MODELS = {"gpt-image-2": GPT_IMAGE_2, "doubao-seedance-2.0": SEEDANCE_2, "mureka-v9-song": MUREKA_V9}
