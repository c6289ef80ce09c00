-- Usage per subscription key per hour. FINAL drops retried duplicates not merged yet.
SELECT
    subscription_key,
    toStartOfHour(ts)                   AS hour,
    count()                             AS requests,
    sum(billable)                       AS billable_requests,
    sum(success)                        AS successful_requests,
    sum(request_size + response_size)   AS bytes,
    round(avg(response_time_ms), 1)     AS avg_response_time_ms
FROM usage.events FINAL
GROUP BY subscription_key, hour
ORDER BY hour, subscription_key
