output "trail_arn" {
  value = aws_cloudtrail.main.arn
}

output "guardduty_detector_id" {
  value = aws_guardduty_detector.main.id
}

output "alerts_topic_arn" {
  value = aws_sns_topic.alerts.arn
}
