"""The QA pages (mounted at /qa/), one module per page group:

- ``review``: the QA home, blind re-review, the comparison after it, adjudication;
- ``plans``: sampling plans and the sample-size helper;
- ``golden``: golden items and golden rates;
- ``calibration``: calibration sessions;
- ``scorecards``: scorecards per reviewer and vendor, and a reviewer's own coaching page;
- ``ground_truth``: the ground-truth CSV export.

QA pages need ``core.perform_qa``; calibration and coaching are for anyone who reviews, and coaching shows only
their own outcomes. Pages read through ``qa.selectors`` and write through ``qa.services``.
"""
