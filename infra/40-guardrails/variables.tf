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
  description = "The state bucket made by 00-bootstrap."
  type        = string
}

variable "monthly_budget_usd" {
  description = "Monthly cost budget; e-mails at 80% actual and 100% forecast (infra/README.md estimates the demo)."
  type        = number
  default     = 1000
}

variable "alert_emails" {
  description = "Who gets the budget alarms."
  type        = list(string)
  validation {
    condition     = length(var.alert_emails) > 0
    error_message = "Give at least one address for the budget alarm."
  }
}
