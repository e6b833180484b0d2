"""Moved to :mod:`sizewise.learn.persist` (one home for routers and scorers); re-exported here."""

from sizewise.learn.persist import FORMAT as FORMAT
from sizewise.learn.persist import FORMAT_VERSION as FORMAT_VERSION
from sizewise.learn.persist import load_bundle as load_bundle
from sizewise.learn.persist import save_bundle as save_bundle
from sizewise.learn.persist import saved_array as saved_array
