# The AWS Distro for OpenTelemetry collector: the services export traces to
# it over OTLP/gRPC (SHOPSTREAM_OTLP_ENDPOINT=http://adot.<namespace>:4317)
# and it forwards them to X-Ray; it also scrapes every service's /metrics
# (the same targets as compose/prometheus/prometheus.yml) into CloudWatch
# metrics through the EMF exporter.

locals {
  adot_config = yamlencode({
    receivers = {
      otlp = { protocols = { grpc = { endpoint = "0.0.0.0:4317" } } }
      prometheus = {
        config = {
          global = { scrape_interval = "30s" }
          scrape_configs = [{
            job_name     = "shopstream"
            metrics_path = "/metrics"
            static_configs = [{
              targets = [for name, s in local.services : "${name}.${local.ns}:${18080 + s.index}"]
            }]
          }]
        }
      }
    }
    processors = { batch = {} }
    exporters = {
      awsxray = { region = var.region }
      # Every exported series is a CloudWatch custom metric (billed per
      # metric), so only the SLO and lag series go, by service (and topic).
      awsemf = {
        region                  = var.region
        namespace               = "Shopstream"
        log_group_name          = aws_cloudwatch_log_group.metrics.name
        dimension_rollup_option = "NoDimensionRollup"
        metric_declarations = [
          {
            dimensions = [["service"]]
            metric_name_selectors = [
              "^shopstream_requests_total$",
              "^shopstream_request_duration_seconds_sum$",
              "^shopstream_request_duration_seconds_count$",
            ]
          },
          {
            dimensions            = [["service", "topic"]]
            metric_name_selectors = ["^shopstream_consumer_lag$"]
          },
        ]
      }
    }
    service = {
      pipelines = {
        traces  = { receivers = ["otlp"], processors = ["batch"], exporters = ["awsxray"] }
        metrics = { receivers = ["prometheus"], processors = ["batch"], exporters = ["awsemf"] }
      }
    }
  })
}

resource "aws_cloudwatch_log_group" "metrics" {
  name              = "/${var.name_prefix}/metrics"
  retention_in_days = 365
  kms_key_id        = local.log_key
}

resource "aws_iam_role" "adot" {
  name               = "${var.name_prefix}-adot"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

# X-Ray's write and sampling actions and cloudwatch:PutMetricData take no
# resource but "*"; the metric namespace is pinned by a condition instead.
data "aws_iam_policy_document" "adot" {
  statement {
    sid = "XRay"
    actions = [
      "xray:PutTraceSegments",
      "xray:PutTelemetryRecords",
      "xray:GetSamplingRules",
      "xray:GetSamplingTargets",
      "xray:GetSamplingStatisticSummaries",
    ]
    resources = ["*"]
  }
  statement {
    sid       = "Metrics"
    actions   = ["cloudwatch:PutMetricData"]
    resources = ["*"]
    condition {
      test     = "StringEquals"
      variable = "cloudwatch:namespace"
      values   = ["Shopstream"]
    }
  }
  statement {
    sid       = "EmfLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"]
    resources = ["${aws_cloudwatch_log_group.metrics.arn}:*"]
  }
}

resource "aws_iam_role_policy" "adot" {
  name   = "adot-export"
  role   = aws_iam_role.adot.id
  policy = data.aws_iam_policy_document.adot.json
}

resource "aws_ecs_task_definition" "adot" {
  #checkov:skip=CKV_AWS_336:the collector keeps its queue files in the image's paths
  family                   = "${var.name_prefix}-adot"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = 256
  memory                   = 512
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.adot.arn
  container_definitions = jsonencode([{
    name                   = "adot"
    image                  = var.adot_image
    essential              = true
    readonlyRootFilesystem = false
    portMappings = [
      { containerPort = 4317, protocol = "tcp", name = "otlp" },
    ]
    environment = [{ name = "AOT_CONFIG_CONTENT", value = local.adot_config }]
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.services.name
        awslogs-region        = var.region
        awslogs-stream-prefix = "adot"
      }
    }
  }])
}

resource "aws_ecs_service" "adot" {
  name             = "adot"
  cluster          = aws_ecs_cluster.main.id
  task_definition  = aws_ecs_task_definition.adot.arn
  desired_count    = 1
  launch_type      = "FARGATE"
  platform_version = "LATEST"
  propagate_tags   = "SERVICE"
  network_configuration {
    subnets          = local.net.private_subnet_ids
    security_groups  = [local.net.tasks_security_group_id]
    assign_public_ip = false
  }
  service_registries {
    registry_arn = aws_service_discovery_service.this["adot"].arn
  }
  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }
}
