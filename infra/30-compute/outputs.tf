output "ecr_repository_url" {
  description = "Push the image here: docker push <url>:<image_tag>."
  value       = aws_ecr_repository.shopstream.repository_url
}

output "load_balancer_dns_name" {
  description = "Point the certificate's DNS name here (a CNAME or an alias record)."
  value       = aws_lb.main.dns_name
}

output "cluster_name" {
  value = aws_ecs_cluster.main.name
}

output "temporal_one_off_task_definitions" {
  description = "Run with `aws ecs run-task` (infra/README.md)."
  value = {
    schema    = aws_ecs_task_definition.temporal_schema.arn
    namespace = aws_ecs_task_definition.temporal_namespace.arn
  }
}
