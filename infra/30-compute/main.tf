# Layer 30: compute. ECS on Fargate (docs/adr/0014-aws-compute-and-temporal.md):
# one ECR repository for the one image, one ECS service per component
# (services.tf), Temporal self-hosted on Fargate with RDS as its store, an
# ADOT collector (traces to X-Ray, metrics to CloudWatch), Cloud Map names
# for service-to-service calls, and the public edge: an HTTPS load balancer
# with AWS WAF in front of the gateway.

terraform {
  required_version = ">= 1.10.0"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.80"
    }
  }
  backend "s3" {
    key = "30-compute/terraform.tfstate"
  }
}

provider "aws" {
  region = var.region
  default_tags {
    tags = {
      project = "shopstream"
      layer   = "30-compute"
    }
  }
}

data "aws_caller_identity" "current" {}

data "terraform_remote_state" "network" {
  backend = "s3"
  config = {
    bucket = var.state_bucket
    key    = "10-network/terraform.tfstate"
    region = var.region
  }
}

data "terraform_remote_state" "data" {
  backend = "s3"
  config = {
    bucket = var.state_bucket
    key    = "20-data/terraform.tfstate"
    region = var.region
  }
}

locals {
  account  = data.aws_caller_identity.current.account_id
  net      = data.terraform_remote_state.network.outputs
  log_key  = local.net.logs_kms_key_arn
  data_key = local.dat.data_kms_key_arn
  secrets  = local.dat.secret_arns
  image    = "${aws_ecr_repository.shopstream.repository_url}:${var.image_tag}"
}

# ---------------------------------------------------------------- ECR
resource "aws_ecr_repository" "shopstream" {
  name                 = var.name_prefix
  image_tag_mutability = "IMMUTABLE"
  image_scanning_configuration {
    scan_on_push = true
  }
  encryption_configuration {
    encryption_type = "KMS"
    kms_key         = local.data_key
  }
}

resource "aws_ecr_lifecycle_policy" "shopstream" {
  repository = aws_ecr_repository.shopstream.name
  policy = jsonencode({
    rules = [{
      rulePriority = 1
      description  = "Keep the last 20 images"
      selection    = { tagStatus = "any", countType = "imageCountMoreThan", countNumber = 20 }
      action       = { type = "expire" }
    }]
  })
}

# ---------------------------------------------------------------- cluster and logs
resource "aws_cloudwatch_log_group" "services" {
  name              = "/${var.name_prefix}/services"
  retention_in_days = 365
  kms_key_id        = local.log_key
}

resource "aws_cloudwatch_log_group" "exec" {
  name              = "/${var.name_prefix}/ecs-exec"
  retention_in_days = 365
  kms_key_id        = local.log_key
}

resource "aws_ecs_cluster" "main" {
  name = var.name_prefix
  setting {
    name  = "containerInsights"
    value = "enabled"
  }
  configuration {
    execute_command_configuration {
      kms_key_id = local.data_key
      logging    = "OVERRIDE"
      log_configuration {
        cloud_watch_encryption_enabled = true
        cloud_watch_log_group_name     = aws_cloudwatch_log_group.exec.name
      }
    }
  }
}

resource "aws_service_discovery_private_dns_namespace" "main" {
  name        = var.dns_namespace
  description = "Service-to-service names of ${var.name_prefix}"
  vpc         = local.net.vpc_id
}

resource "aws_service_discovery_service" "this" {
  for_each = toset(concat(keys(local.services), ["temporal", "adot"]))
  name     = each.key
  dns_config {
    namespace_id   = aws_service_discovery_private_dns_namespace.main.id
    routing_policy = "MULTIVALUE"
    dns_records {
      type = "A"
      ttl  = 10
    }
  }
  health_check_custom_config {
    failure_threshold = 1
  }
}

# ---------------------------------------------------------------- IAM
data "aws_iam_policy_document" "ecs_tasks_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account]
    }
  }
}

# Execution role: pull the image, write logs, read exactly the secrets the
# task definitions name.
resource "aws_iam_role" "execution" {
  name               = "${var.name_prefix}-ecs-execution"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

resource "aws_iam_role_policy_attachment" "execution" {
  role       = aws_iam_role.execution.name
  policy_arn = "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
}

resource "aws_iam_role_policy" "execution_secrets" {
  name = "read-shopstream-secrets"
  role = aws_iam_role.execution.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Effect   = "Allow"
        Action   = ["secretsmanager:GetSecretValue"]
        Resource = values(local.secrets)
      },
      {
        Effect   = "Allow"
        Action   = ["kms:Decrypt"]
        Resource = [local.data_key]
      }
    ]
  })
}

# One task role per service, holding only what that service touches.
resource "aws_iam_role" "task" {
  for_each           = local.services
  name               = "${var.name_prefix}-${each.key}"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

data "aws_iam_policy_document" "task" {
  for_each = local.services
  # MSK Serverless authorises clients by IAM: this cluster's topics and groups.
  statement {
    sid = "Kafka"
    actions = [
      "kafka-cluster:Connect",
      "kafka-cluster:DescribeCluster",
      "kafka-cluster:CreateTopic",
      "kafka-cluster:DescribeTopic",
      "kafka-cluster:DescribeTopicDynamicConfiguration",
      "kafka-cluster:ReadData",
      "kafka-cluster:WriteData",
      "kafka-cluster:WriteDataIdempotently",
      "kafka-cluster:AlterGroup",
      "kafka-cluster:DescribeGroup",
    ]
    resources = [
      local.dat.kafka_cluster_arn,
      "${replace(local.dat.kafka_cluster_arn, ":cluster/", ":topic/")}/*",
      "${replace(local.dat.kafka_cluster_arn, ":cluster/", ":group/")}/*",
    ]
  }
  dynamic "statement" {
    for_each = length(each.value.buckets) == 0 ? [] : [1]
    content {
      sid     = "Objects"
      actions = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:GetObjectRetention"]
      resources = [
        for b in each.value.buckets : "${local.dat.bucket_arns[b]}/*"
      ]
    }
  }
  dynamic "statement" {
    for_each = length(each.value.buckets) == 0 ? [] : [1]
    content {
      sid       = "Buckets"
      actions   = ["s3:ListBucket", "s3:GetBucketLocation"]
      resources = [for b in each.value.buckets : local.dat.bucket_arns[b]]
    }
  }
  dynamic "statement" {
    for_each = length(each.value.buckets) == 0 ? [] : [1]
    content {
      sid       = "BucketKey"
      actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
      resources = [local.data_key]
    }
  }
}

resource "aws_iam_role_policy" "task" {
  for_each = local.services
  name     = "shopstream-${each.key}"
  role     = aws_iam_role.task[each.key].id
  policy   = data.aws_iam_policy_document.task[each.key].json
}

# ---------------------------------------------------------------- identity's keys (EFS)
resource "aws_security_group" "efs" {
  name        = "${var.name_prefix}-efs"
  description = "EFS of identity's signing keys: the tasks only"
  vpc_id      = local.net.vpc_id
}

resource "aws_vpc_security_group_ingress_rule" "efs" {
  security_group_id            = aws_security_group.efs.id
  description                  = "NFS from the tasks"
  referenced_security_group_id = local.net.tasks_security_group_id
  ip_protocol                  = "tcp"
  from_port                    = 2049
  to_port                      = 2049
}

resource "aws_efs_file_system" "keys" {
  creation_token = "${var.name_prefix}-identity-keys"
  encrypted      = true
  kms_key_id     = local.data_key
}

resource "aws_efs_backup_policy" "keys" {
  file_system_id = aws_efs_file_system.keys.id
  backup_policy {
    status = "ENABLED"
  }
}

resource "aws_efs_mount_target" "keys" {
  count           = 2
  file_system_id  = aws_efs_file_system.keys.id
  subnet_id       = local.net.private_subnet_ids[count.index]
  security_groups = [aws_security_group.efs.id]
}

resource "aws_efs_access_point" "keys" {
  file_system_id = aws_efs_file_system.keys.id
  posix_user {
    uid = 10001
    gid = 10001
  }
  root_directory {
    path = "/identity-keys"
    creation_info {
      owner_uid   = 10001
      owner_gid   = 10001
      permissions = "0750"
    }
  }
}

resource "aws_iam_role_policy" "identity_efs" {
  name = "identity-keys-efs"
  role = aws_iam_role.task["identity"].id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Action    = ["elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite"]
      Resource  = aws_efs_file_system.keys.arn
      Condition = { StringEquals = { "elasticfilesystem:AccessPointArn" = aws_efs_access_point.keys.arn } }
    }]
  })
}

# ---------------------------------------------------------------- the services
resource "aws_ecs_task_definition" "service" {
  #checkov:skip=CKV_AWS_336:the root filesystem stays writable: media writes ffmpeg scratch files and mail-sim its messages under /var/lib/shopstream, and Fargate's ephemeral bind mounts are root-owned while the image runs as uid 10001
  for_each                 = local.services
  family                   = "${var.name_prefix}-${each.key}"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = each.value.cpu
  memory                   = each.value.memory
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.task[each.key].arn
  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }
  dynamic "volume" {
    for_each = each.key == "identity" ? [1] : []
    content {
      name = "identity-keys"
      efs_volume_configuration {
        file_system_id     = aws_efs_file_system.keys.id
        transit_encryption = "ENABLED"
        authorization_config {
          access_point_id = aws_efs_access_point.keys.id
          iam             = "ENABLED"
        }
      }
    }
  }
  container_definitions = jsonencode([{
    name                   = each.key
    image                  = local.image
    command                = ["serve", each.key]
    essential              = true
    readonlyRootFilesystem = false
    user                   = "10001:10001"
    privileged             = false
    portMappings = [
      { containerPort = 18080 + each.value.index, protocol = "tcp", name = "http" },
      { containerPort = 18130 + each.value.index, protocol = "tcp", name = "grpc" },
    ]
    environment = [for k, v in local.service_env[each.key] : { name = k, value = v }]
    secrets     = [for k, v in local.service_secrets[each.key] : { name = k, valueFrom = local.secrets[v] }]
    mountPoints = each.key == "identity" ? [{ sourceVolume = "identity-keys", containerPath = "/var/lib/shopstream/keys", readOnly = false }] : []
    healthCheck = {
      command     = ["CMD", "curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:${18080 + each.value.index}/readyz"]
      interval    = 10
      timeout     = 5
      retries     = 6
      startPeriod = 60
    }
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.services.name
        awslogs-region        = var.region
        awslogs-stream-prefix = each.key
      }
    }
  }])
}

resource "aws_ecs_service" "service" {
  for_each               = local.services
  name                   = each.key
  cluster                = aws_ecs_cluster.main.id
  task_definition        = aws_ecs_task_definition.service[each.key].arn
  desired_count          = var.desired_count
  launch_type            = "FARGATE"
  platform_version       = "LATEST"
  propagate_tags         = "SERVICE"
  enable_execute_command = false
  network_configuration {
    subnets          = local.net.private_subnet_ids
    security_groups  = [local.net.tasks_security_group_id]
    assign_public_ip = false
  }
  service_registries {
    registry_arn = aws_service_discovery_service.this[each.key].arn
  }
  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }
  dynamic "load_balancer" {
    for_each = each.key == "gateway" ? [1] : []
    content {
      target_group_arn = aws_lb_target_group.gateway.arn
      container_name   = "gateway"
      container_port   = 18080
    }
  }
  depends_on = [aws_ecs_service.temporal, aws_lb_listener.https]
}
