variable "region" {
  description = "AWS region (the same in every layer)."
  type        = string
  default     = "us-east-1"
}

variable "name_prefix" {
  description = "Prefix of every resource name."
  type        = string
  default     = "shopstream-demo"
}

variable "state_bucket" {
  description = "The state bucket made by 00-bootstrap (to read layers 10 and 20)."
  type        = string
}

variable "image_tag" {
  description = "Tag of the Shopstream image in this layer's ECR repository (tags are immutable: push a new one per build)."
  type        = string
}

variable "certificate_arn" {
  description = "ACM certificate (same region) for the load balancer's HTTPS listener."
  type        = string
}

variable "dns_namespace" {
  description = "Private Cloud Map namespace the services find each other in."
  type        = string
  default     = "shopstream.internal"
}

variable "desired_count" {
  description = "Tasks per Shopstream service."
  type        = number
  default     = 1
}

variable "stripe_api_base" {
  description = "Stripe API base URL for payments; empty for stripe-sim inside the cluster. Stripe test mode: https://api.stripe.com plus the two stripe-* secrets."
  type        = string
  default     = ""
}

variable "adot_image" {
  description = "The AWS Distro for OpenTelemetry collector image."
  type        = string
  default     = "amazon/aws-otel-collector:v0.43.3"
}

variable "waf_rate_limit" {
  description = "Requests per 5 minutes from one IP before WAF blocks it."
  type        = number
  default     = 2000
}

variable "deletion_protection" {
  description = "Protect the load balancer from deletion. Set false (and apply) before `terraform destroy`."
  type        = bool
  default     = true
}
