"""napari plugin for liteunet: localize cells in the open image, from the viewer.

Install with ``pip install "liteunet[napari]"``; napari discovers the plugin through the npe2
manifest ``napari.yaml`` (the ``napari.manifest`` entry point). It contributes:

* a dock widget, *Localize cells* (:mod:`._widget`), that runs :func:`liteunet.localize` on the
  selected Image layer in a worker thread and adds the points as a Points layer;
* sample data, the images bundled in :mod:`liteunet.samples` (:mod:`._sample_data`);
* a writer that saves a Points layer as CSV or QuPath GeoJSON with the CLI's writers
  (:mod:`._writer`).

Nothing else in liteunet imports this subpackage: napari and Qt stay an optional extra.
"""
