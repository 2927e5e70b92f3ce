"""The plugin's own tests: genbench's test kit checks it against every rule the harness relies on."""

from genbench_linear_ae import LinearAE

from genbench.testing import check_model


def test_linear_ae_follows_the_model_rules():
    check_model(LinearAE)


def test_linear_ae_with_other_options():
    check_model(LinearAE, LinearAE.Options(latent_dim=3))
