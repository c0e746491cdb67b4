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

variable "vpc_cidr" {
  description = "CIDR of the VPC; subnets are /24s carved from it."
  type        = string
  default     = "10.40.0.0/16"
}

variable "availability_zones" {
  description = "The two availability zones of the subnets (must be in var.region)."
  type        = list(string)
  default     = ["us-east-1a", "us-east-1b"]
  validation {
    condition     = length(var.availability_zones) == 2
    error_message = "Give exactly two availability zones."
  }
}
