-- Every reminder gets a stable id (schema v3 of the task events: ReminderSpec.id). The API
-- assigns ids from now on; this gives one to each reminder stored before, so the reminders
-- worker, the snooze endpoint and clients can name them. Order within the array is kept.
UPDATE tasks
SET reminders = (
    SELECT COALESCE(
        jsonb_agg(
            CASE WHEN r->>'id' IS NULL
                 THEN r || jsonb_build_object('id', gen_random_uuid())
                 ELSE r END
            ORDER BY ord),
        '[]'::jsonb)
    FROM jsonb_array_elements(tasks.reminders) WITH ORDINALITY AS e(r, ord)
)
WHERE jsonb_array_length(reminders) > 0;
