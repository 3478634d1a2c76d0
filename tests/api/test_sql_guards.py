"""SQL typed by hand cannot oversell or break the counts: the triggers and constraints of db/migrations refuse it with
named errors (issue item 4). No server here: the database is migrated with `marquee migrate`."""

import subprocess
import threading

import psycopg
import pytest

from conftest import ROOT, marquee_bin
from apihelpers import wait_until

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def conn(database):
    result = subprocess.run([marquee_bin(), "migrate", "--database-url", database.url], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    with database.connect() as c:
        yield c


@pytest.fixture
def ticket_type(conn):
    """A fresh ticket type of capacity 5; returns (event_id, type_id)."""
    event_id = conn.execute("insert into events (name, starts_at) values ('SQL', now() + interval '1 day') returning id").fetchone()[0]
    type_id = conn.execute(
        "insert into event_tickets (event_id, name, price_cents, capacity) values (%s, 'GA', 100, 5) returning id",
        (event_id,)).fetchone()[0]
    return event_id, type_id


def hold(conn, ticket_type, quantity, status="reserved", user="sql-user", expires="now() + interval '10 minutes'"):
    event_id, type_id = ticket_type
    return conn.execute(
        f"""insert into tickets (event_id, event_ticket_id, user_id, quantity, status, hold_expires_at)
            values (%s, %s, %s, %s, %s, {expires}) returning id""",
        (event_id, type_id, user, quantity, status)).fetchone()[0]


def state(conn, type_id):
    return conn.execute("select sold, reserved, available, version from event_tickets where id = %s", (type_id,)).fetchone()


def raises(sqlstate, statement, params=(), conn=None):
    with pytest.raises(psycopg.Error) as info:
        conn.execute(statement, params)
    assert info.value.sqlstate == sqlstate, f"expected SQLSTATE {sqlstate}, got {info.value.sqlstate}: {info.value}"
    return info.value


def test_a_hold_larger_than_what_is_left_raises_mq002(conn, ticket_type):
    hold(conn, ticket_type, 3)
    before = state(conn, ticket_type[1])
    error = raises("MQ002", "insert into tickets (event_id, event_ticket_id, user_id, quantity, hold_expires_at) "
                   "values (%s, %s, 'greedy', 3, now() + interval '1 minute')", ticket_type, conn=conn)
    assert error.diag.message_primary == "insufficient_availability"
    assert error.diag.message_detail == "available=2"
    assert state(conn, ticket_type[1]) == before
    assert conn.execute("select count(*) from tickets where user_id = 'greedy'").fetchone()[0] == 0


@pytest.mark.parametrize("status", ["reserved", "confirmed"])
def test_taking_a_seat_when_none_is_left_raises_mq001(conn, ticket_type, status):
    hold(conn, ticket_type, 5, status="confirmed")
    before = state(conn, ticket_type[1])
    error = raises("MQ001", "insert into tickets (event_id, event_ticket_id, user_id, quantity, status, hold_expires_at) "
                   "values (%s, %s, 'late', 1, %s, now() + interval '1 minute')", (*ticket_type, status), conn=conn)
    assert error.diag.message_primary == "sold_out"
    assert error.diag.message_detail == "available=0"
    assert state(conn, ticket_type[1]) == before


@pytest.mark.parametrize("assignment", ["reserved = capacity + 1", "sold = capacity + 1", "sold = -1", "reserved = -1",
                                        "capacity = 2", "capacity = -1"])
def test_counts_set_by_hand_violate_a_check(conn, ticket_type, assignment):
    hold(conn, ticket_type, 3)  # reserved 3 of 5
    before = state(conn, ticket_type[1])
    raises("23514", f"update event_tickets set {assignment} where id = %s", (ticket_type[1],), conn=conn)
    assert state(conn, ticket_type[1]) == before


def test_available_and_version_cannot_be_set_by_hand(conn, ticket_type):
    hold(conn, ticket_type, 2)
    sold, reserved, available, version = state(conn, ticket_type[1])
    conn.execute("update event_tickets set available = 100, version = 1 where id = %s", (ticket_type[1],))
    assert state(conn, ticket_type[1]) == (sold, reserved, 3, version)  # derived columns follow the counts


@pytest.mark.parametrize("start, target", [("cancelled", "confirmed"), ("cancelled", "reserved"), ("expired", "reserved"),
                                           ("confirmed", "reserved"), ("confirmed", "expired"), ("expired", "cancelled")])
def test_invalid_status_transitions_raise_mq003(conn, ticket_type, start, target):
    ticket = hold(conn, ticket_type, 2)
    conn.execute("update tickets set status = %s where id = %s", (start, ticket))
    before = state(conn, ticket_type[1])
    error = raises("MQ003", "update tickets set status = %s where id = %s", (target, ticket), conn=conn)
    assert error.diag.message_primary == "invalid_transition"
    assert state(conn, ticket_type[1]) == before
    assert conn.execute("select status from tickets where id = %s", (ticket,)).fetchone()[0] == start


@pytest.mark.parametrize("assignment", ["quantity = 1", "quantity = quantity + 1", "user_id = 'thief'",
                                        "event_ticket_id = gen_random_uuid()"])
def test_changing_an_immutable_column_raises_mq005(conn, ticket_type, assignment):
    ticket = hold(conn, ticket_type, 2)
    before = state(conn, ticket_type[1])
    error = raises("MQ005", f"update tickets set {assignment} where id = %s", (ticket,), conn=conn)
    assert error.diag.message_primary == "immutable_column"
    assert state(conn, ticket_type[1]) == before


def test_confirming_a_hold_past_its_expiry_raises_mq004(conn, ticket_type):
    with conn.transaction(force_rollback=True):  # uncommitted, so nothing else expires it meanwhile
        ticket = hold(conn, ticket_type, 2, expires="now() - interval '1 second'")
        error = raises("MQ004", "update tickets set status = 'confirmed' where id = %s", (ticket,), conn=conn)
        assert error.diag.message_primary == "hold_expired"


def test_confirming_an_expired_hold_raises_mq004(conn, ticket_type):
    """Whether or not the sweeper has written the expiry down, the answer to confirming it is hold_expired."""
    ticket = hold(conn, ticket_type, 2)
    conn.execute("update tickets set status = 'expired' where id = %s", (ticket,))
    before = state(conn, ticket_type[1])
    error = raises("MQ004", "update tickets set status = 'confirmed' where id = %s", (ticket,), conn=conn)
    assert error.diag.message_primary == "hold_expired"
    assert state(conn, ticket_type[1]) == before


def test_moves_between_states_keep_the_counts(conn, ticket_type):
    type_id = ticket_type[1]
    start = state(conn, type_id)
    a = hold(conn, ticket_type, 2)
    assert state(conn, type_id)[:3] == (0, 2, 3)
    conn.execute("update tickets set status = 'confirmed' where id = %s", (a,))
    assert state(conn, type_id)[:3] == (2, 0, 3)
    b = hold(conn, ticket_type, 3)
    conn.execute("update tickets set status = 'expired' where id = %s", (b,))
    assert state(conn, type_id)[:3] == (2, 0, 3)
    conn.execute("update tickets set status = 'cancelled' where id = %s", (a,))
    assert state(conn, type_id)[:3] == (0, 0, 5)
    c = hold(conn, ticket_type, 4)
    conn.execute("delete from tickets where id = %s", (c,))  # deleting a hold gives its seats back
    assert state(conn, type_id)[:3] == (0, 0, 5)
    d = hold(conn, ticket_type, 1, status="cancelled")  # a row that holds nothing takes nothing
    assert state(conn, type_id)[:3] == (0, 0, 5)
    assert state(conn, type_id)[3] == start[3] + 7  # seven changes of the counts, seven versions
    assert d


def test_stale_holds_are_released_for_the_next_buyer_and_in_the_view(conn, ticket_type):
    event_id, type_id = ticket_type
    stale = hold(conn, ticket_type, 5, expires="now() + interval '50 milliseconds'")
    wait_until(lambda: conn.execute("select now() >= hold_expires_at from tickets where id = %s", (stale,)).fetchone()[0],
               timeout=5, what="the hold to run out")
    assert state(conn, type_id)[:3] == (0, 5, 0)  # nothing has written the expiry down
    view = conn.execute("select sold, reserved, available from event_ticket_availability where id = %s", (type_id,)).fetchone()
    assert view == (0, 0, 5)
    fresh = hold(conn, ticket_type, 5, user="next-buyer")
    assert fresh
    assert conn.execute("select status from tickets where id = %s", (stale,)).fetchone()[0] == "expired"
    assert state(conn, type_id)[:3] == (0, 5, 0)


def test_a_buyer_waiting_on_the_row_lock_sees_the_seats_taken(conn, ticket_type, database):
    """Two transactions race for the last seats: the second waits for the first and is then refused."""
    event_id, type_id = ticket_type
    outcome = {}
    with database.connect(autocommit=False) as first:
        first.execute("insert into tickets (event_id, event_ticket_id, user_id, quantity, hold_expires_at) "
                      "values (%s, %s, 'first', 4, now() + interval '1 minute')", ticket_type)

        def second():
            with database.connect() as c:
                c.execute("set application_name = 'mq-second-buyer'")
                try:
                    c.execute("insert into tickets (event_id, event_ticket_id, user_id, quantity, hold_expires_at) "
                              "values (%s, %s, 'second', 2, now() + interval '1 minute')", ticket_type)
                    outcome["result"] = "inserted"
                except psycopg.Error as e:
                    outcome["result"] = (e.sqlstate, e.diag.message_detail)

        thread = threading.Thread(target=second)
        thread.start()
        wait_until(lambda: conn.execute("select 1 from pg_stat_activity where application_name = 'mq-second-buyer' "
                                        "and wait_event_type = 'Lock'").fetchone(), timeout=5, what="the second buyer to wait")
        first.commit()
        thread.join(timeout=10)
        assert not thread.is_alive()
    assert outcome["result"] == ("MQ002", "available=1")
    assert state(conn, type_id)[:3] == (0, 4, 1)
