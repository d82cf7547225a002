"""SKU pricing, table-driven: first matching SKU, absent fields at their schema default, quantity
the product of the named integer fields; and the body check of the params schema subset."""
import pytest

from reapi.errors import GatewayError
from reapi.operations.task_models import task_model_row
from reapi.tasks.errors import TaskError
from reapi.tasks.params import validate
from reapi.tasks.pricing import cost_nano
from tests.tasks.helpers import model_of

C = 10**6  # nano-USD per credit

PRICES = [  # model, body, credits
    ("gpt-image-2", {"prompt": "a cat"}, 30),  # resolution absent: its default 1k
    ("gpt-image-2", {"prompt": "a cat", "resolution": "1k"}, 30),
    ("gpt-image-2", {"prompt": "a cat", "resolution": "2k"}, 50),
    ("gpt-image-2", {"prompt": "a cat", "resolution": "4k", "n": 1}, 80),
    ("doubao-seedance-2.0", {"prompt": "a cat runs"}, 5 * 120),  # 5 s default, 720p, audio on
    ("doubao-seedance-2.0", {"prompt": "a cat runs", "duration": 10, "generate_audio": False}, 10 * 100),
    ("doubao-seedance-2.0", {"prompt": "a cat runs", "duration": 4, "resolution": "480p"}, 4 * 60),
    ("doubao-seedance-2.0", {"prompt": "a cat runs", "duration": 15, "resolution": "4k"}, 15 * 820),
    ("doubao-seedance-2.0", {"prompt": "a cat runs", "duration": 8, "resolution": "1080p",
                             "generate_audio": False}, 8 * 240),
    ("mureka-v9-song", {"lyrics": "la la"}, 60),
    ("mureka-v9-song", {"lyrics": "la la", "number_of_songs": 3}, 180),
]


@pytest.mark.parametrize("model,body,credits", PRICES)
def test_sku_price(model, body, credits):
    m = model_of(model)
    validate(m.params, body)
    assert cost_nano(m, body) == credits * C


FRACTIONAL = {"category": "image", "unit": "image", "quantity": ["n", "batch"], "params": {
    "type": "object", "properties": {"n": {"type": "integer", "minimum": 0, "default": 2},
                                     "batch": {"type": "integer", "minimum": 1},
                                     "q": {"type": "string", "enum": ["lo", "hi"]}}},
    "skus": [{"when": {"q": "hi"}, "credits_per_unit": "0.000001"},
             {"when": {}, "credits_per_unit": "12.345678"}]}


@pytest.mark.parametrize("body,nano", [
    ({}, 2 * 12_345_678),  # n default 2, batch absent and without default: 1; q absent: the catch-all SKU
    ({"n": 3, "batch": 7}, 21 * 12_345_678),
    ({"q": "hi", "n": 5}, 5),  # the first match wins; 0.000001 credits is 1 nano-USD
    ({"n": 0}, 0),
])
def test_quantity_is_a_product_and_prices_are_exact(body, nano):
    m = model_of("x", FRACTIONAL)
    assert cost_nano(m, body) == nano


def test_no_matching_sku_is_20001():
    m = model_of("x", {**FRACTIONAL, "skus": [{"when": {"q": "hi"}, "credits_per_unit": "1"}]})
    with pytest.raises(TaskError) as e:
        cost_nano(m, {"q": "lo"})
    assert e.value.code == 20001 and "q" in e.value.message


PARAMS = [  # body, code, field named in the message
    ({}, 20002, "prompt"),
    ({"prompt": "x", "colour": "red"}, 20001, "colour"),
    ({"prompt": 5}, 20001, "prompt"),
    ({"prompt": ""}, 20001, "prompt"),
    ({"prompt": "x" * 32001}, 20001, "prompt"),
    ({"prompt": "x", "resolution": "8k"}, 20001, "resolution"),
    ({"prompt": "x", "n": 2}, 20001, "n"),
    ({"prompt": "x", "n": True}, 20001, "n"),
    ({"prompt": "x", "n": 1.0}, 20001, "n"),
    ({"prompt": "x", "image_urls": "https://a.example/x.png"}, 20001, "image_urls"),
    ({"prompt": "x", "image_urls": ["data:image/png;base64,iVBORw0KGgo="]}, 20001, "image_urls[0]"),
    ({"prompt": "x", "image_urls": ["iVBORw0KGgoAAAANSUhEUgAAAAEAAAAB"]}, 20001, "image_urls[0]"),
    ({"prompt": "x", "image_urls": ["ftp://a.example/x.png"]}, 20001, "image_urls[0]"),
    ({"prompt": "x", "image_urls": ["https://"]}, 20001, "image_urls[0]"),
    ({"prompt": "x", "image_urls": ["https://a.example/x.png"] * 17}, 20001, "image_urls"),
]


@pytest.mark.parametrize("body,code,field", PARAMS)
def test_params_refusals_name_the_field(body, code, field):
    m = model_of("gpt-image-2")
    with pytest.raises(TaskError) as e:
        validate(m.params, body)
    assert e.value.code == code and e.value.message.startswith(field + ":")


def test_valid_media_urls_pass():
    m = model_of("gpt-image-2")
    validate(m.params, {"prompt": "x", "image_urls": ["https://a.example/x.png", "http://b.example:8080/y"]})


@pytest.mark.parametrize("change,param", [
    ({"params": {"type": "object", "properties": {"n": {"type": "number"}}}}, "params"),
    ({"params": {"type": "object", "properties": {"n": {"type": "integer", "pattern": "x"}}}}, "params"),
    ({"params": {"type": "object", "properties": {"model": {"type": "string"}}}}, "params"),
    ({"quantity": ["prompt"]}, "quantity"),
    ({"skus": [{"when": {"nope": 1}, "credits_per_unit": "1"}]}, "skus.0.when"),
    ({"skus": [{"when": {}, "credits_per_unit": "-1"}]}, "skus.0.credits_per_unit"),
    ({"skus": [{"when": {}, "credits_per_unit": "0.0000001"}]}, "skus.0.credits_per_unit"),
    ({"skus": [{"when": {}, "credits_per_unit": 1.5}]}, "skus.0.credits_per_unit"),
    ({"skus": []}, "skus"),
    ({"unit": "token"}, "unit"),
])
def test_bad_task_models_are_refused_naming_the_field(change, param):
    from reapi.tasks.demo_models import GPT_IMAGE_2

    with pytest.raises(GatewayError) as e:
        task_model_row(**{**GPT_IMAGE_2, **change})
    assert e.value.status == 400 and (e.value.param or "").startswith(param), e.value
