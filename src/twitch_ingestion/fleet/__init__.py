"""Several instances sharing the channels, with Kafka as the only coordinator.

`control_topic` holds the channel table, `assignment` turns the consumer group's
assignment into JOINs and PARTs, `handover` keeps a moved channel read until its new
owner has it, `status` is what each instance reports and what `status` prints.
See docs/scaling.md.
"""
