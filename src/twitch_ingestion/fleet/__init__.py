"""Several instances sharing the channels, with Kafka as the only coordinator.

`control_topic` holds the channel table; `control_reader` follows the consumer group's
assignment on a thread and posts `events`; `assignment` (`FleetMember`) turns them into
JOINs and PARTs; `handover` keeps a moved channel read until its new owner has it and
`fence` makes the hand-over exact; `standby`, `standby_keeper` and `tail_read` are the
hot standby; `report_publisher` publishes what each instance reports and `status` is
what `status` prints. Each takes `config`'s `FleetConfig` or `ControlTopicsConfig`,
never the settings. See docs/scaling.md.
"""
