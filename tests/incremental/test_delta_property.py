"""Property: for any sequence of append sizes and any choice of when to refresh (and an
occasional overwrite or requested full refresh), a DELTA view (projection and
aggregate-with-MERGE) equals the full recompute of its logic after every refresh."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.config import Settings
from shared.store import Store
from tests.conftest import _truncate

from .helpers import Events, truth, view_rows
from .test_delta_views import AGGREGATE, FILTER, refresh

pytestmark = pytest.mark.postgres

STEP = st.one_of(
    st.tuples(st.just("append"), st.integers(min_value=0, max_value=120)),
    st.tuples(st.just("overwrite"), st.integers(min_value=1, max_value=60)),
    st.tuples(st.just("refresh"), st.booleans()),  # True: a requested full refresh
)


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(steps=st.lists(STEP, min_size=1, max_size=8))
def test_incremental_refreshes_equal_the_full_recompute(
        steps: list[tuple[str, object]], pg_store: Store, wsettings: Settings,
        tmp_path_factory: pytest.TempPathFactory) -> None:
    _truncate(pg_store)
    tmp = tmp_path_factory.mktemp("prop")
    events = Events(wsettings, pg_store, tmp)
    events.write(50)
    for step, arg in [*steps, ("refresh", False)]:
        if step == "append" and isinstance(arg, int) and arg:
            events.write(arg)
        elif step == "overwrite" and isinstance(arg, int):
            events.write(arg, mode="overwrite")
        elif step == "refresh":
            for nql, logic in (FILTER, AGGREGATE):
                refresh(pg_store, wsettings, nql, full=bool(arg))
                name = nql.split('"')[1]
                assert view_rows(wsettings, pg_store, name, tmp) == truth(events, logic)


