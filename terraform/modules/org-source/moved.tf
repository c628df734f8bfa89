# The delivery chain moved into the internal `delivery` module: these blocks carry the state of
# a org-source applied before it, so nothing is replaced (a dead-letter queue keeps its messages).

moved {
  from = aws_cloudwatch_event_connection.receiver
  to   = module.delivery.aws_cloudwatch_event_connection.receiver
}

moved {
  from = aws_cloudwatch_event_api_destination.receiver
  to   = module.delivery.aws_cloudwatch_event_api_destination.receiver
}

moved {
  from = aws_sqs_queue.dlq
  to   = module.delivery.aws_sqs_queue.dlq
}

moved {
  from = aws_sqs_queue_policy.dlq
  to   = module.delivery.aws_sqs_queue_policy.dlq
}

moved {
  from = aws_cloudwatch_metric_alarm.dlq_depth
  to   = module.delivery.aws_cloudwatch_metric_alarm.dlq_depth
}

moved {
  from = aws_iam_role.invoke
  to   = module.delivery.aws_iam_role.invoke
}

moved {
  from = aws_iam_role_policy.invoke
  to   = module.delivery.aws_iam_role_policy.invoke
}

moved {
  from = aws_cloudwatch_event_target.receiver
  to   = module.delivery.aws_cloudwatch_event_target.receiver
}
