"""Local stand-ins for what Lambda and CloudFormation provide: used by the CLI, demo and tests.

Nothing here is imported by the Lambda handler.
"""
