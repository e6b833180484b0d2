"""Big teaches small: task models distilled from a big model's answers (issue #19).

* :mod:`~sizewise.distill.normalise`: free-text teacher answers -> labels (:class:`AnswerNormaliser`);
* :mod:`~sizewise.distill.student`: :class:`TaskStudent`, the calibrated task classifier (estimator kind ``task``);
* :mod:`~sizewise.distill.online`: :class:`OnlineDistiller`, learning from live teacher answers, serving once it
  passes its target on held-out answers, auditing a share of its answers for drift.

Import the submodules directly; this package imports nothing heavy (scikit-learn loads inside ``fit``).
"""
