# Layer 40: account guardrails of the security baseline. CloudTrail (every
# region, log file validation, KMS, copied to CloudWatch Logs), GuardDuty,
# and an AWS Budgets alarm on the month's cost.

terraform {
  required_version = ">= 1.10.0"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.80"
    }
  }
  backend "s3" {
    key = "40-guardrails/terraform.tfstate"
  }
}

provider "aws" {
  region = var.region
  default_tags {
    tags = {
      project = "shopstream"
      layer   = "40-guardrails"
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
  account = data.aws_caller_identity.current.account_id
  trail   = "${var.name_prefix}-trail"
}

# ---------------------------------------------------------------- CloudTrail
resource "aws_kms_key" "trail" {
  description             = "CloudTrail of ${var.name_prefix}"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "AccountAdministers"
        Effect    = "Allow"
        Principal = { AWS = "arn:aws:iam::${local.account}:root" }
        Action    = "kms:*"
        Resource  = "*"
      },
      {
        Sid       = "CloudTrailEncrypts"
        Effect    = "Allow"
        Principal = { Service = "cloudtrail.amazonaws.com" }
        Action    = ["kms:GenerateDataKey*", "kms:DescribeKey"]
        Resource  = "*"
        Condition = {
          StringLike = { "kms:EncryptionContext:aws:cloudtrail:arn" = "arn:aws:cloudtrail:*:${local.account}:trail/*" }
        }
      }
    ]
  })
}

locals {
  trail_bucket     = "${var.name_prefix}-${local.account}-cloudtrail"
  trail_bucket_arn = "arn:aws:s3:::${local.trail_bucket}"
  trail_source_arn = "arn:aws:cloudtrail:${var.region}:${local.account}:trail/${local.trail}"
}

module "trail_bucket" {
  source      = "../modules/private-bucket"
  name        = local.trail_bucket
  kms_key_arn = aws_kms_key.trail.arn
  log_bucket  = data.terraform_remote_state.data.outputs.logs_bucket
  expire_days = 365
  # CloudTrail's delivery rights, beside the module's TLS-only statement.
  extra_policy_statements = [
    {
      Sid       = "CloudTrailAclCheck"
      Effect    = "Allow"
      Principal = { Service = "cloudtrail.amazonaws.com" }
      Action    = "s3:GetBucketAcl"
      Resource  = local.trail_bucket_arn
      Condition = { StringEquals = { "aws:SourceArn" = local.trail_source_arn } }
    },
    {
      Sid       = "CloudTrailWrite"
      Effect    = "Allow"
      Principal = { Service = "cloudtrail.amazonaws.com" }
      Action    = "s3:PutObject"
      Resource  = "${local.trail_bucket_arn}/AWSLogs/${local.account}/*"
      Condition = { StringEquals = { "aws:SourceArn" = local.trail_source_arn } }
    }
  ]
}

resource "aws_cloudwatch_log_group" "trail" {
  name              = "/${var.name_prefix}/cloudtrail"
  retention_in_days = 365
  kms_key_id        = data.terraform_remote_state.network.outputs.logs_kms_key_arn
}

resource "aws_iam_role" "trail" {
  name = "${var.name_prefix}-cloudtrail"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "cloudtrail.amazonaws.com" }
      Action    = "sts:AssumeRole"
    }]
  })
}

resource "aws_iam_role_policy" "trail" {
  name = "cloudtrail-to-logs"
  role = aws_iam_role.trail.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect   = "Allow"
      Action   = ["logs:CreateLogStream", "logs:PutLogEvents"]
      Resource = "${aws_cloudwatch_log_group.trail.arn}:*"
    }]
  })
}

resource "aws_sns_topic" "alerts" {
  name              = "${var.name_prefix}-alerts"
  kms_master_key_id = aws_kms_key.trail.arn
}

resource "aws_cloudtrail" "main" {
  name                          = local.trail
  s3_bucket_name                = module.trail_bucket.id
  is_multi_region_trail         = true
  include_global_service_events = true
  enable_log_file_validation    = true
  kms_key_id                    = aws_kms_key.trail.arn
  cloud_watch_logs_group_arn    = "${aws_cloudwatch_log_group.trail.arn}:*"
  cloud_watch_logs_role_arn     = aws_iam_role.trail.arn
  sns_topic_name                = aws_sns_topic.alerts.name
  event_selector {
    read_write_type           = "All"
    include_management_events = true
  }
  depends_on = [module.trail_bucket]
}

# ---------------------------------------------------------------- GuardDuty
resource "aws_guardduty_detector" "main" {
  #checkov:skip=CKV2_AWS_3:a single account, not an AWS Organizations delegated administrator, so there is no organization configuration to set
  enable                       = true
  finding_publishing_frequency = "SIX_HOURS"
}

# ---------------------------------------------------------------- Budgets
resource "aws_budgets_budget" "monthly" {
  name         = "${var.name_prefix}-monthly"
  budget_type  = "COST"
  limit_amount = tostring(var.monthly_budget_usd)
  limit_unit   = "USD"
  time_unit    = "MONTHLY"

  notification {
    comparison_operator        = "GREATER_THAN"
    threshold                  = 80
    threshold_type             = "PERCENTAGE"
    notification_type          = "ACTUAL"
    subscriber_email_addresses = var.alert_emails
  }

  notification {
    comparison_operator        = "GREATER_THAN"
    threshold                  = 100
    threshold_type             = "PERCENTAGE"
    notification_type          = "FORECASTED"
    subscriber_email_addresses = var.alert_emails
  }
}
