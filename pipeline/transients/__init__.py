"""Catalogue-based transient search (the ``transients_simple`` step).

Modules: ``filtering`` (flags, cone, other images of the field), ``matching``
(nearest neighbours on the sky), ``bands`` (which catalogue band a candidate is
compared in, AB/Vega offsets), ``xmatch`` (CDS XMatch client and the magnitude test),
``skybot`` (IMCCE SkyBoT client), ``vsx`` (AAVSO VSX through VizieR), ``candidates``
(the table and its CSV/VOTable/DS9 files). Cutouts use the shared :mod:`pipeline.cutouts`
and the atlas client of :mod:`pipeline.targets.hips`. The step itself is
:mod:`pipeline.steps.transients_simple`.
"""
