variable "name" {
  description = "Bucket name (globally unique)."
  type        = string
}

variable "kms_key_arn" {
  description = "KMS key for SSE-KMS."
  type        = string
}

variable "log_bucket" {
  description = "Bucket that receives this bucket's server access logs."
  type        = string
}

variable "object_lock_days" {
  description = "Default Object Lock retention in COMPLIANCE mode, in days; null for no Object Lock."
  type        = number
  default     = null
}

variable "expire_days" {
  description = "Delete current objects after this many days; null to keep them."
  type        = number
  default     = null
}

variable "noncurrent_days" {
  description = "Delete non-current versions after this many days."
  type        = number
  default     = 30
}

variable "cors_origins" {
  description = "Browser origins allowed to PUT/GET with presigned URLs; empty for no CORS."
  type        = list(string)
  default     = []
}

variable "eventbridge" {
  description = "Send this bucket's events to EventBridge."
  type        = bool
  default     = false
}

variable "extra_policy_statements" {
  description = "More bucket policy statements, with full ARNs (the TLS-only statement is always there)."
  type        = list(any)
  default     = []
}
