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
