"""The timetable: which jobs are due, and their next slots."""

from scheduler.timetable import Timetable, next_slot


def test_due_jobs_come_earliest_first_and_move_to_their_next_slot():
    table = Timetable()
    table.put("b", 10, 105.0)
    table.put("a", 10, 100.0)
    table.put("later", 10, 200.0)
    assert table.take_due(106.0) == [("a", 100.0, 110.0), ("b", 105.0, 115.0)]
    assert table.take_due(106.0) == []
    assert table.next_due() == 110.0
    assert table.next_run("b") == 115.0


def test_missed_slots_are_skipped_not_bunched():
    table = Timetable()
    table.put("a", 10, 100.0)
    assert table.take_due(135.0) == [("a", 100.0, 140.0)]
    assert next_slot(100.0, 10, 100.0) == 110.0
    assert next_slot(100.0, 10, 95.0) == 110.0


def test_a_job_put_again_or_removed_leaves_no_old_slot_behind():
    table = Timetable()
    table.put("a", 10, 100.0)
    table.put("a", 60, 150.0)  # interval changed: the 100.0 slot is gone
    table.put("b", 10, 120.0)
    table.remove("b")
    assert table.next_due() == 150.0
    assert table.take_due(149.0) == []
    assert table.take_due(150.0) == [("a", 150.0, 210.0)]
    assert "b" not in table and len(table) == 1


def test_the_same_slot_put_twice_is_due_once():
    table = Timetable()
    table.put("a", 10, 100.0)
    table.remove("a")
    table.put("a", 10, 100.0)
    assert table.take_due(100.0) == [("a", 100.0, 110.0)]


def test_schedule_jobs_mirror_the_slots():
    table = Timetable()
    table.put("a", 30, 100.0)
    job = table._jobs["a"]
    assert job.interval == 30 and job.unit == "seconds"
    table.take_due(100.0)
    table.refresh()
    assert job.next_run.timestamp() == 130.0
    table.clear()
    assert table.next_due() is None and len(table) == 0
