"""Golden-value tests of `common/networks.py`: the Nature DQN network of Mnih et al. (2015).

The architecture is checked layer by layer against Extended Data Table 1 of the paper,
and by its exact parameter count, so that a changed kernel size or stride is caught.
"""

import json
import zipfile

import keras
import numpy as np
import pytest

from common.networks import DuelingHead, build_q_network

ATARI_SHAPE = (84, 84, 4)

# Parameters of each layer, counted by hand: kernel_height * kernel_width * in_channels
# * filters + filters for a convolution, inputs * units + units for a dense layer.
CONV1 = 8 * 8 * 4 * 32 + 32  # 84x84x4 -> 20x20x32
CONV2 = 4 * 4 * 32 * 64 + 64  # -> 9x9x64
CONV3 = 3 * 3 * 64 * 64 + 64  # -> 7x7x64
HIDDEN = 7 * 7 * 64 * 512 + 512  # flattened 3136 -> 512


def head_parameters(num_actions):
    return 512 * num_actions + num_actions


@pytest.fixture(scope="module")
def breakout_network():
    keras.utils.set_random_seed(0)
    return build_q_network(ATARI_SHAPE, num_actions=4)


def random_frames(batch_size, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (batch_size, *ATARI_SHAPE), dtype=np.uint8)


def test_input_is_uint8_and_output_has_one_value_per_action(breakout_network):
    assert breakout_network.inputs[0].dtype == "uint8"
    assert tuple(breakout_network.inputs[0].shape) == (None, *ATARI_SHAPE)

    q_values = breakout_network(random_frames(3), training=False)

    assert tuple(q_values.shape) == (3, 4)
    assert q_values.dtype == "float32"


@pytest.mark.parametrize("num_actions", [4, 6])
def test_parameter_count_matches_the_nature_network(num_actions):
    network = build_q_network(ATARI_SHAPE, num_actions)

    expected = CONV1 + CONV2 + CONV3 + HIDDEN + head_parameters(num_actions)
    assert network.count_params() == expected
    assert network.count_params() == {4: 1_686_180, 6: 1_686_180 + 2 * 513}[num_actions]


def test_layers_are_those_of_extended_data_table_1(breakout_network):
    layers = [layer for layer in breakout_network.layers if not isinstance(layer, keras.layers.InputLayer)]
    assert [type(layer).__name__ for layer in layers] == [
        "Rescaling", "Conv2D", "Conv2D", "Conv2D", "Flatten", "Dense", "Dense"]

    convolutions = [(layer.filters, layer.kernel_size, layer.strides, layer.activation.__name__)
                    for layer in layers if isinstance(layer, keras.layers.Conv2D)]
    assert convolutions == [(32, (8, 8), (4, 4), "relu"),
                            (64, (4, 4), (2, 2), "relu"),
                            (64, (3, 3), (1, 1), "relu")]
    assert all(layer.padding == "valid" for layer in layers if isinstance(layer, keras.layers.Conv2D))

    hidden, head = [layer for layer in layers if isinstance(layer, keras.layers.Dense)]
    assert (hidden.units, hidden.activation.__name__) == (512, "relu")
    assert (head.units, head.activation.__name__) == (4, "linear")


def test_frames_are_scaled_by_1_over_255_inside_the_model(breakout_network):
    rescaling = next(layer for layer in breakout_network.layers
                     if isinstance(layer, keras.layers.Rescaling))
    assert rescaling.scale == pytest.approx(1 / 255)
    assert rescaling.offset == 0
    assert not any(isinstance(layer, keras.layers.Lambda) for layer in breakout_network.layers)

    # The same layers (same weights) fed floats directly, skipping the rescaling.
    float_input = keras.Input(shape=ATARI_SHAPE, dtype="float32")
    x = float_input
    for layer in breakout_network.layers[breakout_network.layers.index(rescaling) + 1:]:
        x = layer(x)
    float_network = keras.Model(float_input, x)

    white = np.full((1, *ATARI_SHAPE), 255, dtype=np.uint8)
    q_white = breakout_network(white, training=False).numpy()
    assert np.abs(q_white).max() > 0  # A zero output would make the comparison empty.
    np.testing.assert_allclose(q_white, float_network(np.ones((1, *ATARI_SHAPE), np.float32)),
                               rtol=1e-5, atol=1e-6)

    frames = random_frames(2, seed=1)
    np.testing.assert_allclose(breakout_network(frames, training=False),
                               float_network(frames.astype(np.float32) / 255), rtol=1e-5, atol=1e-6)


def test_saved_keras_file_loads_in_safe_mode_with_identical_outputs(breakout_network, tmp_path):
    path = tmp_path / "q_network.keras"
    breakout_network.save(path)

    loaded = keras.models.load_model(path, safe_mode=True)

    frames = random_frames(4, seed=2)
    assert loaded.inputs[0].dtype == "uint8"
    np.testing.assert_array_equal(loaded(frames, training=False), breakout_network(frames, training=False))


# The dueling network (--dueling, Wang et al., 2016): a value and an advantage stream.

def test_dueling_head_centres_the_advantages_on_their_mean():
    value = np.array([[2.0], [-1.0]], np.float32)
    advantages = np.array([[1.0, 2.0, 6.0, -1.0], [0.0, 0.0, 3.0, 1.0]], np.float32)
    # By hand: mean advantages 2 and 1, so Q = V + A - mean(A).
    expected = [[1.0, 2.0, 6.0, -1.0], [-2.0, -2.0, 1.0, -1.0]]
    np.testing.assert_allclose(DuelingHead()([value, advantages]), expected)


@pytest.fixture(scope="module")
def dueling_network():
    keras.utils.set_random_seed(0)
    return build_q_network(ATARI_SHAPE, num_actions=4, dueling=True)


def test_dueling_network_has_the_two_streams_of_wang_et_al(dueling_network):
    stream = 3136 * 512 + 512
    assert dueling_network.count_params() == (CONV1 + CONV2 + CONV3 + 2 * stream + 513
                                              + head_parameters(4)) == 3_292_837
    dense = {layer.name: (layer.units, layer.activation.__name__)
             for layer in dueling_network.layers if isinstance(layer, keras.layers.Dense)}
    assert dense == {"value_hidden": (512, "relu"), "value": (1, "linear"),
                     "advantage_hidden": (512, "relu"), "advantages": (4, "linear")}
    frames = random_frames(3, seed=3)
    streams = keras.Model(dueling_network.input, [dueling_network.get_layer("value").output,
                                                   dueling_network.get_layer("advantages").output])
    value, advantages = (output.numpy() for output in streams(frames, training=False))
    np.testing.assert_allclose(dueling_network(frames, training=False),
                               value + advantages - advantages.mean(axis=1, keepdims=True),
                               rtol=1e-5, atol=1e-6)


def test_dueling_network_loads_in_safe_mode_by_a_name_that_names_no_module(dueling_network,
                                                                           tmp_path):
    path = tmp_path / "dueling.keras"
    dueling_network.save(path)
    with zipfile.ZipFile(path) as archive:
        layers = json.loads(archive.read("config.json"))["config"]["layers"]
    head = next(layer for layer in layers if layer["class_name"] == "DuelingHead")
    # A standalone copy defines DuelingHead in __main__; the name it saves under is the same.
    assert head["registered_name"] == "dqn>DuelingHead"
    assert not any(isinstance(layer, keras.layers.Lambda) for layer in dueling_network.layers)

    loaded = keras.models.load_model(path, safe_mode=True)
    frames = random_frames(4, seed=4)
    np.testing.assert_array_equal(loaded(frames, training=False),
                                  dueling_network(frames, training=False))
