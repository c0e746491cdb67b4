output "state_bucket" {
  description = "Put this in infra/backend.hcl as `bucket`."
  value       = aws_s3_bucket.state.id
}

output "state_kms_key_arn" {
  description = "Put this in infra/backend.hcl as `kms_key_id`."
  value       = aws_kms_key.state.arn
}
