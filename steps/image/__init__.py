"""The model image: one recipe (:mod:`~steps.image.recipe`), reproducible OCI layers
(:mod:`~steps.image.oci`), the daemonless builder (:mod:`~steps.image.builder`), the smoke test
under emulation (:mod:`~steps.image.smoke`) and the push (:mod:`~steps.image.push`)."""
