"""What several test modules share; a test module imports from here, never from another test module.

* ``contract``: ``ModelContractTests``, the model contract checked once per architecture;
* ``doc_commands``: the ``semantic-anchors ...`` command lines of the docs, recipes and help;
* ``fabricate``: fabricated bench folders and the bench tests' tiny training settings;
* ``layouts``: look-alikes of other libraries' models, for ``find_classifier`` / ``FeatureCapture``;
* ``mmseg_import``: mmsegmentation imported for the tests that compare with it;
* ``query_models``: tiny ``transformers`` query-based models (Mask2Former) and their targets;
* ``references``: slow, obviously-correct loops and stand-ins with chosen outputs;
* ``runs``: tiny training settings and the check that two runs ended bitwise equal;
* ``syncs``: a counter of host-device synchronisations (the CPU stand-in of CUDA's sync debug);
* ``twostage``: tiny Fashion-MNIST runs of the two-stage (DisAlign, MiSLAS) tests;
* ``writers``: tiny datasets written in their standard on-disk layouts.

Fixtures stay in the ``conftest.py`` files, as pytest finds them there.
"""
