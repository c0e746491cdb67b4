output "data_kms_key_arn" {
  value = aws_kms_key.data.arn
}

output "logs_bucket" {
  value = aws_s3_bucket.logs.id
}

output "buckets" {
  description = "Bucket names, by the role the services give them."
  value = {
    media         = module.media.id
    media_uploads = module.media_uploads.id
    dsar_exports  = module.dsar_exports.id
    audit         = module.audit.id
  }
}

output "bucket_arns" {
  value = {
    media         = module.media.arn
    media_uploads = module.media_uploads.arn
    dsar_exports  = module.dsar_exports.arn
    audit         = module.audit.arn
  }
}

output "postgres_address" {
  value = aws_db_instance.postgres.address
}

output "kafka_bootstrap_brokers" {
  description = "MSK Serverless bootstrap (SASL/IAM over TLS, port 9098)."
  value       = aws_msk_serverless_cluster.main.bootstrap_brokers_sasl_iam
}

output "kafka_cluster_arn" {
  value = aws_msk_serverless_cluster.main.arn
}

output "opensearch_endpoint" {
  value = aws_opensearch_domain.search.endpoint
}

output "secret_arns" {
  description = "Secrets Manager ARNs by name (postgres-url, redis-url, ...)."
  value = merge(
    { for k, s in aws_secretsmanager_secret.generated : k => s.arn },
    { for k, s in aws_secretsmanager_secret.operator : k => s.arn },
  )
}
