import numpy as np

from activelearn import model as cnn


def test_shapes_embeddings_and_augmentation_only_in_training():
    m = cnn.build_model(10, seed=0)
    x = np.random.default_rng(0).integers(0, 255, (5, 28, 28)).astype("uint8")
    probs, emb = cnn.predict_with_embeddings(m, x)
    assert probs.shape == (5, 10) and emb.shape == (5, 256)
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)
    again, _ = cnn.predict_with_embeddings(m, x)
    np.testing.assert_allclose(probs, again, atol=1e-6)   # inference is deterministic
    empty_p, empty_e = cnn.predict_with_embeddings(m, np.zeros((0, 28, 28), np.uint8))
    assert empty_p.shape == (0, 10) and empty_e.shape == (0, 256)


def test_predictions_are_the_mean_of_the_image_and_its_mirror_image_embeddings_the_image_own():
    import keras

    m = cnn.build_model(10, seed=0, policy="float32")
    x = np.random.default_rng(2).integers(0, 255, (4, 28, 28)).astype("uint8")
    image = x.astype(np.float32)
    plain = keras.ops.convert_to_numpy(m(image, training=False))
    mirrored = keras.ops.convert_to_numpy(m(image[:, :, ::-1].copy(), training=False))
    probs, emb = cnn.predict_with_embeddings(m, x)
    np.testing.assert_allclose(probs, (plain + mirrored) / 2, atol=1e-6)
    assert np.abs(plain - mirrored).max() > 1e-4          # the mirror image matters: this test can tell
    embed = keras.Model(m.inputs, m.get_layer(cnn.EMBEDDING_LAYER).output)
    np.testing.assert_allclose(emb, keras.ops.convert_to_numpy(embed(image, training=False)), atol=1e-6)


def test_grow_output_keeps_learned_weights():
    m = cnn.build_model(10, seed=0)
    x = np.random.default_rng(1).integers(0, 255, (16, 28, 28)).astype("uint8")
    before, emb_before = cnn.predict_with_embeddings(m, x)
    grown = cnn.grow_output(m, 12)
    after, emb_after = cnn.predict_with_embeddings(grown, x)
    assert after.shape == (16, 12)
    np.testing.assert_allclose(emb_before, emb_after, atol=1e-5)
    old_kernel = m.get_layer(cnn.OUTPUT_LAYER).get_weights()[0]
    new_kernel = grown.get_layer(cnn.OUTPUT_LAYER).get_weights()[0]
    np.testing.assert_array_equal(new_kernel[:, :10], old_kernel)
    # the old classes keep their ranking; the new ones start unlikely
    np.testing.assert_array_equal(after[:, :10].argmax(1), before.argmax(1))
    assert after[:, 10:].max() < 0.2
    assert cnn.grow_output(m, 10) is m


def test_training_dataset_augments_in_the_pipeline_and_keeps_weights():
    rng = np.random.default_rng(2)
    x = np.zeros((64, 28, 28), np.uint8)
    x[:, 4:12, 2:9] = 255                                   # an off-centre block: a flip or shift moves it
    targets = np.eye(4, dtype=np.float32)[rng.integers(0, 4, 64)]
    weights = np.linspace(1, 2, 64).astype(np.float32)
    batches = list(cnn.training_dataset(x, targets, batch_size=16, seed=0, sample_weight=weights))
    assert len(batches) == 4
    xb, yb, wb = batches[0]
    assert xb.shape == (16, 28, 28) and yb.shape == (16, 4) and wb.shape == (16,)
    augmented = np.concatenate([b[0].numpy() for b in batches])
    assert (np.abs(augmented - 255.0 * (x > 0)).reshape(64, -1).max(1) > 1).mean() > 0.5
    # every image keeps its own target and weight through the shuffle
    seen = np.concatenate([b[2].numpy() for b in batches])
    np.testing.assert_allclose(np.sort(seen), np.sort(weights), rtol=1e-6)
    plain = np.concatenate([b[0].numpy() for b in cnn.training_dataset(x, targets, batch_size=16, seed=0,
                                                                      augment=False)])
    assert np.array_equal(np.sort(plain.reshape(64, -1), 0), np.sort(255.0 * (x > 0).reshape(64, -1), 0))


def test_models_saved_with_augmentation_layers_are_not_augmented_twice():
    assert not cnn.has_augmentation(cnn.build_model(10))
    # the seed models of earlier releases had the random layers in the network itself
    legacy = cnn.keras.Sequential([cnn.keras.Input((28, 28, 1)), cnn.keras.layers.RandomFlip("horizontal")])
    assert cnn.has_augmentation(legacy)
